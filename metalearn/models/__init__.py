"""Models as (init, apply) pairs of pure functions, found by name."""

from metalearn.models.conv4 import Conv4
from metalearn.models.conv4 import Model
from metalearn.models.conv4 import conv4
from metalearn.models.conv4 import resolve_conv_impl
from metalearn.models.mlp import MLP
from metalearn.models.mlp import mlp
from metalearn.models.registry import ModelSpec
from metalearn.models.registry import Shape
from metalearn.models.registry import get
from metalearn.models.registry import names
from metalearn.models.registry import register
from metalearn.models.resnet12 import ResNet12
from metalearn.models.resnet12 import resnet12
