"""Model builders: one `build_<name>(input_shape, num_classes, **hp) -> keras.Model` per architecture."""
