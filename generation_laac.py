# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The fast decoding loop travels with every LAAC checkpoint, the transformers way: `save_pretrained` writes
`custom_generate/generate.py` next to the weights, and `from_pretrained(folder, trust_remote_code=True)` installs it
as `model.generate`. Where the package is installed, `model.fast_generate` runs the same file.
"""

import importlib.util
import os
import shutil
from typing import Any, Optional, Union


# The fast decoding loop, beside this file in the package and in a checkpoint loaded with trust_remote_code.
CUSTOM_GENERATE_DIR = "custom_generate"
CUSTOM_GENERATE_FILE = os.path.join(CUSTOM_GENERATE_DIR, "generate.py")


def custom_generate_source() -> Optional[str]:
    """Path of the fast decoding loop next to this file, or None (an older checkpoint's code has none)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CUSTOM_GENERATE_FILE)
    return path if os.path.isfile(path) else None


def write_custom_generate(save_directory: Union[str, os.PathLike]) -> None:
    """Copy the fast decoding loop into `save_directory`/custom_generate/ (nothing when this code has none)."""
    source = custom_generate_source()
    if source is not None:
        target = os.path.join(save_directory, CUSTOM_GENERATE_FILE)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)


class CustomGenerateMixin:
    """For a `PreTrainedModel`: save and push the fast decoding loop with the weights, and run it (`fast_generate`)."""

    def fast_generate(self, *args: Any, **kwargs: Any) -> Any:
        """
        The fast decoding loop (`custom_generate/generate.py`: same token ids as `generate`, preallocated cache,
        in-place beam reordering) where that file sits next to this module, else `generate`. A checkpoint loaded
        with `trust_remote_code=True` already has it as `generate`; the pipeline and `laac caption` call this.
        """
        source = custom_generate_source()
        if source is None:
            return self.generate(*args, **kwargs)
        if "_custom_generate" not in self.__dict__:  # load the file once per model, outside its modules
            spec = importlib.util.spec_from_file_location(f"{__name__}_custom_generate", source)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.__dict__["_custom_generate"] = module.generate
        return self.__dict__["_custom_generate"](self, *args, **kwargs)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus the fast decoding loop as `custom_generate/generate.py`."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.should_save_on_this_rank(kwargs.get("is_main_process", True)):
            write_custom_generate(save_directory)

    def _upload_modified_files(
        self, working_dir: Union[str, os.PathLike], repo_id: str, files_timestamps: dict[str, float], **kwargs: Any
    ) -> Any:
        """
        `PushToHubMixin._upload_modified_files` with `custom_generate/` in the commit. `save_pretrained(...,
        push_to_hub=True)` uploads from inside `PreTrainedModel.save_pretrained`, before this class writes the fast
        loop, and a folder already there counts as modified only when the folder's own time changes; so the loop
        is written here and its folder always uploaded.
        """
        write_custom_generate(working_dir)
        files_timestamps = {name: stamp for name, stamp in files_timestamps.items() if name != CUSTOM_GENERATE_DIR}
        return super()._upload_modified_files(working_dir, repo_id, files_timestamps, **kwargs)


__all__ = ["CUSTOM_GENERATE_FILE", "CustomGenerateMixin", "custom_generate_source", "write_custom_generate"]
