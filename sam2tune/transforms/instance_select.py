"""Pick one named object out of a class label map: the k-th connected instance of a given class id."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from sam2tune.prompts.simulate import as_numpy, connected_instances


class SelectInstanced(MapTransform):
    """Label (1,H,W) of class ids -> float32 binary (1,H,W) of instance ``d[instance_key]`` of class ``d[class_key]``.

    Deterministic counterpart of ``SimulatePromptsd(instance=True, class_ids=...)`` for evaluation, where every
    (class, instance) of a slice is an item of its own (see ``sam2tune.data.knee.knee_slice_datalist(mode="eval")``).
    Instances are numbered as ``connected_instances`` numbers them (scipy label order, full connectivity).
    """

    def __init__(self, keys: KeysCollection = "label", class_key: str = "class_id", instance_key: str = "instance",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_key, self.instance_key = class_key, instance_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            for k in (self.class_key, self.instance_key):
                if k not in d:
                    raise KeyError(f"SelectInstanced needs {k!r} in the item (id {d.get('id')!r}); build the "
                                   "datalist with mode='eval'.")
            arr = as_numpy(d[key])
            parts = connected_instances(arr[0] == int(d[self.class_key]))
            k = int(d[self.instance_key])
            if k >= len(parts):
                raise ValueError(f"Item {d.get('id')!r}: class {d[self.class_key]} has {len(parts)} instances, "
                                 f"instance {k} requested.")
            d[key] = convert_to_dst_type(parts[k][None].astype(np.float32), d[key], dtype=np.float32)[0]
            d["prompt_class"] = int(d[self.class_key])
        return d


__all__ = ["SelectInstanced"]
