"""Fine-tuning an encoder into a classifier, predicting for both cameras, and the submission file."""
