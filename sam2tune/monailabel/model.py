"""One bundle's SAM2 network for the server: built from the bundle's inference.json, hot-reloaded after training."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict

import numpy as np
import torch
from fastapi import HTTPException
from monai.bundle import ConfigParser

from sam2tune.bundles import bundle_root
from sam2tune.monailabel.settings import AppSettings
from sam2tune.networks import CheckpointMismatchError, load_finetuned_state_dict, read_state_dict

logger = logging.getLogger(__name__)

DIMENSION_KEY = "data_dimension"  # metadata.json: 2 = the bundle reads photos / slices, 3 = volumes


def read_metadata(root: str | os.PathLike) -> dict:
    """A bundle's ``configs/metadata.json``.

    Args:
        root: the bundle folder.

    Returns:
        The metadata mapping.

    Raises:
        ValueError: the file is missing or is not a JSON object (the message names the file).
    """
    path = os.path.join(root, "configs", "metadata.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the bundle's metadata ({exc}); every bundle needs a JSON "
                         "configs/metadata.json (see docs/bundle_authoring.md).") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: metadata must be a JSON object, got {type(meta).__name__}.")
    return meta


def data_dimension(meta: dict, source: str = "metadata.json") -> int:
    """The dimension of the images a bundle serves: 2 (photos) or 3 (volumes).

    Read from the metadata key ``data_dimension``. The per-slice SAM2 network of a 3D bundle declares 2D I/O in
    ``network_data_format`` (what the model zoo's ``verify_net_in_out`` checks), so the length of ``spatial_shape``
    (MONAI Label's rule for its own bundle tasks) cannot tell a volume bundle from a photo bundle here; it is used
    only when ``data_dimension`` is absent.

    Args:
        meta: the bundle's metadata.
        source: the file name for error messages.

    Returns:
        2 or 3.

    Raises:
        ValueError: ``data_dimension`` is present but not 2 or 3.
    """
    if DIMENSION_KEY in meta:
        dim = meta[DIMENSION_KEY]
        if isinstance(dim, bool) or dim not in (2, 3):
            raise ValueError(f"{source}: {DIMENSION_KEY} must be 2 (photos / slices) or 3 (volumes), got {dim!r}.")
        return int(dim)
    shape = meta.get("network_data_format", {}).get("inputs", {}).get("image", {}).get("spatial_shape")
    return len(shape) if shape else 3


class BundleModel:
    """Lazily built SAM2Segmenter of bundle `name`; `network()` reloads <model_dir>/<name>/model.pt when it changes.

    It also keeps the image embeddings of the images it served (``features``): computed once per (image file,
    slice, encoder weights, preprocessing), reused by interactive infer and quick updates, dropped when other
    encoder weights are loaded.

    Args:
        name: bundle name (a folder under bundles/).
        settings: app settings (size overrides, model_dir, base checkpoint, device).
        dropout: MC-dropout probability given to the bundle's `network_def` (0 for plain inference).

    Image embeddings kept: ``settings.embedding_cache`` (least recently used dropped first; 0 keeps none).
    """

    def __init__(self, name: str, settings: AppSettings, dropout: float = 0.0) -> None:
        self.name, self.settings, self.dropout = name, settings, dropout
        self.root = bundle_root(name)
        self.ckpt_dir = os.path.join(settings.model_dir, name)
        self.model_path = os.path.join(self.ckpt_dir, "model.pt")
        self.config_file = os.path.join(self.root, "configs", "inference.json")
        self.metadata = read_metadata(self.root)
        self.dimension = data_dimension(self.metadata, os.path.join(self.root, "configs", "metadata.json"))
        self.parser = ConfigParser()
        self.parser.read_config(self.config_file)
        self.parser.update({"ckpt_dir": self.ckpt_dir, **settings.network_overrides()})
        # A wrapped network_def (abdomen: BoxPromptedSegmenter for the zoo's checks) is served as the SAM2Segmenter
        # inside.
        self.net_id = "network_def#segmenter" if "segmenter" in self.parser.get("network_def", {}) else "network_def"
        net_cfg = self.parser.get(self.net_id, {})
        self.in_channels = int(net_cfg.get("in_channels", 3))
        self.num_prompt_tokens = int(net_cfg.get("num_prompt_tokens", 0) or 0)
        self.hu_window = self.parser.get("hu_window")
        self.device = torch.device(settings.torch_device())
        self._lock = threading.RLock()
        self._net: torch.nn.Module | None = None
        self._loaded_mtime: float | None = None
        self._generation = 0  # +1 each time other weights are put in service (build, hot reload, quick update)
        self._embeddings: OrderedDict = OrderedDict()
        self.embedding_capacity = int(settings.embedding_cache)
        self.embedding_hits = self.embedding_misses = 0
        self.served: dict = {"source": "not built yet"}  # what the served weights are, for /info/ and infer answers

    @property
    def has_learned_prompt(self) -> bool:
        """True when the network carries learned prompt tokens (it can segment without clicks)."""
        return self.num_prompt_tokens > 0

    def weights_version(self) -> float | None:
        """Modification time of the fine-tuned model.pt (None while only the base weights exist)."""
        try:
            return os.path.getmtime(self.model_path)
        except OSError:
            return None

    @property
    def generation(self) -> int:
        """How many times weights were put in service (0 before the first build); interactive sessions made with
        other weights start over (sam2tune.monailabel.sessions). Read it under `lock`, after `network()`."""
        return self._generation

    def _build(self) -> torch.nn.Module:
        version = self.weights_version()
        ckpt = self.model_path if version is not None else (self.settings.pretrained_checkpoint or None)
        self.parser[f"{self.net_id}#pretrained_checkpoint"] = ckpt
        self.parser[f"{self.net_id}#dropout"] = self.dropout
        self.parser[f"{self.net_id}#warn_random_init"] = True  # inference.json turns it off: it loads model.pt later
        net = self.parser.get_parsed_content(self.net_id, instantiate=True, lazy=False)
        self._loaded_mtime = version
        logger.info("Built %s network (weights: %s)", self.name, ckpt or "random init")
        return net.to(self.device).eval()

    def network(self) -> torch.nn.Module:
        """The eval-mode network, rebuilt or reloaded if model.pt changed since it was loaded (thread-safe).

        A fine-tuned model.pt loads strictly (sam2tune.networks.load_finetuned_state_dict): a file from another
        bundle, variant or image size raises a 500 naming the file, the missing / unexpected keys and the likely
        cause. Nothing of it is loaded then (keys and shapes are checked before any tensor is copied); the
        previous weights stay in memory but are not served, and the next request tries the file again.
        """
        with self._lock:
            version = self.weights_version()
            if self._net is None:
                self._net = self._checked(self._build)
                self._generation += 1
                self._loaded(version)
            elif version is not None and version != self._loaded_mtime:
                # model.pt is written atomically by ModelExport, so a changed mtime means a complete new file.
                self._checked(self._reload)
                self._loaded_mtime = version
                self._generation += 1
                self._loaded(version)
                logger.info("Hot-reloaded %s from %s (all keys matched)", self.name, self.model_path)
            return self._net

    def _loaded(self, version: float | None) -> None:
        """Weights came from disk (or the base checkpoint): the encoder may differ, so cached embeddings go."""
        self._embeddings.clear()
        source = "model.pt" if version is not None else (self.settings.pretrained_checkpoint or "random init")
        self.served = {"source": source, "generation": self._generation, "weights_version": version}

    def features(self, x: np.ndarray, key: tuple | None = None) -> dict:
        """Image embeddings of one model input, from the cache when this image was encoded by the served encoder.

        Args:
            x: the model input (C, H, W) in [0, 1].
            key: what identifies it (image file, modification time, slice); None: encode without caching.

        Returns:
            ``SAM2Segmenter.encode(image, project_high_res=False)`` of it, on the model's device (the decoder's
            projection of the high-res maps runs in ``decode``, so a quick update that trains it keeps them valid).
        """
        with self._lock:
            net = self.network()
            cache_key = None if key is None else (*key, tuple(x.shape))
            if cache_key is not None and cache_key in self._embeddings:
                self._embeddings.move_to_end(cache_key)
                self.embedding_hits += 1
                return self._embeddings[cache_key]
            img = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
            with torch.no_grad():
                feats = net.encode(img, project_high_res=False)
            self.embedding_misses += 1
            if cache_key is not None and self.embedding_capacity > 0:
                self._embeddings[cache_key] = feats
                while len(self._embeddings) > self.embedding_capacity:
                    self._embeddings.popitem(last=False)
            return feats

    def embedding_stats(self) -> dict:
        """{"kept", "hits", "misses"} of the embedding cache (for GET /info/)."""
        with self._lock:
            return {"kept": len(self._embeddings), "hits": self.embedding_hits, "misses": self.embedding_misses}

    def swap_decoder(self, trained: torch.nn.Module, written: str, generation: int, info: dict) -> bool:
        """Put a quick update's decoder in service: copied into the served network under the lock, model.pt
        replaced by `written` (its complete state, already on disk) in the same step.

        Args:
            trained: the network copy whose mask decoder (and prompt tokens) were trained; it shares the encoder.
            written: a file in the model folder holding ``trained``'s full state dict.
            generation: the generation the copy was taken from.
            info: what the new weights were trained on (kept in ``served``).

        Returns:
            False (nothing changed) when other weights were put in service since the copy was taken.
        """
        with self._lock:
            if self._net is None or self._generation != generation or self.weights_version() != self._loaded_mtime:
                return False
            self._net.sam.sam_mask_decoder.load_state_dict(trained.sam.sam_mask_decoder.state_dict(), strict=True)
            if getattr(self._net, "prompt_tokens", None) is not None:
                self._net.prompt_tokens.data.copy_(trained.prompt_tokens.data)
            os.replace(written, self.model_path)
            self._loaded_mtime = self.weights_version()  # not a reload: the encoder and its embeddings stay
            self._generation += 1
            self.served = {**info, "generation": self._generation, "weights_version": self._loaded_mtime,
                           "updated": time.time()}
            return True

    def _reload(self) -> None:
        load_finetuned_state_dict(self._net, read_state_dict(self.model_path), source=self.model_path)
        self._net.to(self.device).eval()  # adapters / prompt tokens the file added are created on the CPU

    def _checked(self, load):
        try:
            return load()
        except Exception as exc:  # ConfigParser wraps what network_def raised: look down the cause chain
            err = exc
            while err is not None and not isinstance(err, CheckpointMismatchError):
                err = err.__cause__ or err.__context__
            if err is None:
                raise
            logger.error("%s: %s", self.name, err)
            raise HTTPException(status_code=500, detail=(
                f"Model {self.name}: the fine-tuned weights {self.model_path} do not fit the served network "
                f"(sam2_variant / image_size of --conf, or a file of another bundle): {err} Retrain with POST "
                f"/train/{self.name} or remove the file to serve the base weights.")) from exc

    @property
    def lock(self) -> threading.RLock:
        """Lock serialising forward passes (one network instance is shared by request threads)."""
        return self._lock
