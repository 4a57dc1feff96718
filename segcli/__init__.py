"""segcli: semantic segmentation with the FCN and DeepLab families.

Importing this package does not import torch, so ``segcli --help`` stays fast.
"""

__version__ = "0.1.0"
