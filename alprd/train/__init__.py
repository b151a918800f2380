"""Training a plate recogniser: synthetic plates, data sets and the training loop (issue #10)."""
