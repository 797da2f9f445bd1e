"""Built-in agent kinds, one small module each. ``registry`` registers them."""
