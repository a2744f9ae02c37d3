"""The one package that talks to ComfyUI internals, one module per concern: ui (errors, progress),
sampling, encoders, autograd, patching, folders, family. The node files stay thin over it."""
