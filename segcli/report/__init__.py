"""`predict --report`: one self-contained HTML page (OUT/index.html) to look at a run's results.

`entries` gathers what happened to each input (its outputs on disk, its JSON summary, its
failure), `page` renders them; the page links its images by relative paths and loads nothing
from the network, so the output folder can be moved, zipped or served as it is.
"""
