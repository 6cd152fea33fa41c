"""Errors a person can act on. Each message names the file or model and says what to do."""


class FusionDeskError(Exception):
    """Base class: anything the app reports to the user as a plain message, never a traceback."""


class ModelBundleError(FusionDeskError):
    """The model bundle is missing, corrupt, or lacks a model."""


class InputFileError(FusionDeskError):
    """A user's file cannot be used (corrupt, empty, wrong type, too large)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
