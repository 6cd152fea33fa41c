"""FusionDesk engine: offline multimodal perception on ONNX Runtime. No UI imports here."""

from .errors import FusionDeskError, InputFileError, ModelBundleError
from .manifest import ModelBundle
from .runtime import Runtime, get_runtime, set_runtime

__all__ = ["FusionDeskError", "InputFileError", "ModelBundleError", "ModelBundle", "Runtime", "get_runtime", "set_runtime"]
