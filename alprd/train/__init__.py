"""Training of alprd's own models: synthetic plates (`synth`), data sets (`data`),
the plate recogniser (`model`) and its training loop (`ocr`, `alprd train-ocr`).
Needs torch; the serving path never imports this package."""
