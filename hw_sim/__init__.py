"""Bit-accurate batched emulator of the Loihi-style fixed-point semantics, resources, energy, device server."""
