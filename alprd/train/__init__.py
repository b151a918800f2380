"""Training of alprd's own models (`alprd train-ocr`). Needs torch; the serving path
never imports this package."""
