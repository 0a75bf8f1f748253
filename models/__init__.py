"""Host-side models: datasets, spike encodings, exact reference, trainers, baselines."""
