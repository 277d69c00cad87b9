"""Judging representations and classifiers: probes, baselines, log loss and calibration, bootstrap CIs."""
