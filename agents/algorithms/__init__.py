"""Pure loss and advantage functions (tensors in, tensors out)."""
