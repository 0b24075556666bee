"""Part 2 of the course, image representations: LeNet-5, deeper CNNs, ResNet, GANs, and the image
features (RoI, grid, patch) that the vision-language models consume.

Modules: ``digits`` (data), ``classify`` (training/evaluation helper), ``lenet``, ``blocks``, ``nets``,
``gan``, ``pretrained`` (torchvision backbones, FLOP counting), ``features``.
"""
