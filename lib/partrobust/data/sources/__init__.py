"""Converters of the real datasets' raw releases into the prepared format: Part-ImageNet, Cityscapes-Panoptic-Parts, PASCAL-Part."""
