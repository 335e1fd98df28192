"""The networks: the Inception-v1 I3D (``inception``) and the inflated ResNet-50 family (``resnet3d``), plain
``nn.Module``s whose layouts are data (``architecture``); ``flops`` counts their arithmetic. How they are run
fast is ``i3d.runtimes``'s business."""
