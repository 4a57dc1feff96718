"""compare-upsampling: nearest, bilinear, transposed convolution (fixed / learned) and max-unpooling.

`methods` holds the operators; `encoder` the frozen shared encoder (deeplabv3p-mobilenet-synth)
and its SegNet-style pooling positions; `network` the decoder that differs only in how it
upsamples; `features` / `training` the cached features and the training on them (through
`segcli.training.fit`); `decoders` the checkpoints; `runners` / `compare` the measurement;
`intervals` the bootstrap intervals and pairwise verdicts; `report` the tables and pictures.
"""
