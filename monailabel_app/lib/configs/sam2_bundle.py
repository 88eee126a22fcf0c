"""One TaskConfig serves every sam2tune bundle: interactive (+ automatic) infer and a fine-tuning train task."""

from __future__ import annotations

from monailabel.interfaces.config import TaskConfig

from sam2tune.monailabel.app import bundle_tasks


class SAM2BundleConfig(TaskConfig):
    """Wiring only: the tasks come from sam2tune.monailabel.app.bundle_tasks(name, settings)."""

    def init(self, name, model_dir, conf, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.infers, self.train_task, self.dropout_model = bundle_tasks(name, kwargs["settings"])

    def infer(self):
        return self.infers

    def trainer(self):
        return self.train_task
