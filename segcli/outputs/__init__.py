"""What `predict` writes per image: label PNGs, overlays with a legend, probabilities, JSON summaries.

`plan` decides the files of a run (names, what exists, what may be replaced), `kinds` holds one
entry per kind of file, `writer` writes one image's set atomically, `folder` prepares the output
folder; `images`, `overlay` and `png` draw and encode.
"""
