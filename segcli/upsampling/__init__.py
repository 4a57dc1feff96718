"""compare-upsampling: nearest, bilinear, transposed convolution (fixed / learned) and max-unpooling.

`methods` holds the operators, `network` the small encoder-decoder the decoders share,
`decoders` their checkpoints, `runners` / `compare` the measurement, `report` the pictures.
"""
