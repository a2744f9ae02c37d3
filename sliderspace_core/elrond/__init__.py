"""ELROND (METHODS §2): concept complexity from gradients in the text-conditioning space."""
