"""Datasets: procedural scenes (`synth`) and VOC-format folders (`voc`)."""
