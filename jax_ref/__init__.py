"""The same MLP written as idiomatic JAX.  Never imports ``manual`` or ``torch_ref``."""
