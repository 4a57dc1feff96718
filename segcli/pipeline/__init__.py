"""Segment many files with one engine: outputs planned up front, then decode -> predict -> write.

`FolderRun` (run.py) checks the output plan before the model loads and runs the images through
one `Scheduler` (scheduler.py); `StopRequests` (interrupts.py) turns Ctrl-C and SIGTERM into a
stop between images. `segment_files` does both in one call.
"""
