"""The version of ckptd (also ``ckptd.__version__``)."""

__version__ = "0.1.0"
