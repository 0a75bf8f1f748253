"""snnc toolchain: artifact I/O, quantizer, mapper, verifier and CLI."""
