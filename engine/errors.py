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

    def __reduce__(self):  # a cluster worker's file errors travel back to the driver (engine.cluster)
        return InputFileError, (self.path, self.problem)


class StorageError(FusionDeskError):
    """The app's own output (a results file, the search index, a transcript or mask it writes) cannot be
    written: the disk is full, the place is read-only or not writable. Names the path and, for a full disk,
    the free space; what was finished before is kept (engine.fileio.storage_error makes these)."""

    def __init__(self, path, problem: str, advice: str = ""):
        self.path = str(path)
        self.problem = problem
        self.advice = advice
        super().__init__(f"{self.path}: {problem}" + (f"; {advice}" if advice else ""))

    def __reduce__(self):
        return StorageError, (self.path, self.problem, self.advice)

    def with_advice(self, more: str) -> "StorageError":
        return StorageError(self.path, self.problem, f"{self.advice} {more}".strip())


class PackNotInstalled(ModelBundleError):
    """A feature needs a model that lives in an optional pack (engine.packs) which is not installed. The message
    names the feature, the pack and its file, and how to add it."""

    def __init__(self, message: str, pack_name: str, model_id: str):
        self.pack_name = pack_name
        self.model_id = model_id
        super().__init__(message)

    def __reduce__(self):
        return PackNotInstalled, (str(self), self.pack_name, self.model_id)


class PackError(FusionDeskError):
    """A pack file cannot be installed (not a pack, truncated, corrupt, for another bundle version, unsafe), or a
    pack cannot be removed. Names the file or folder and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return PackError, (self.path, self.problem)
