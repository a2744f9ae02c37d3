"""ELROND (Skierś, Trzciński, Deja 2026): directions in the text-conditioning space."""
