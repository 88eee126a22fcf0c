"""sam2tune MONAI Label app: every bundle under bundles/ as interactive/automatic SAM2 infer + fine-tuning.

Start: monailabel start_server --app monailabel_app --studies DIR --conf models all
   or: --studies http://127.0.0.1:8042/dicom-web  (DICOMweb, e.g. Orthanc; labels go back as DICOM SEG)
Options (--conf key value, or env SAM2TUNE_ML_<KEY>): see sam2tune.monailabel.settings.AppSettings.
"""

from __future__ import annotations

import logging

from lib.configs.sam2_bundle import SAM2BundleConfig
from monailabel.config import settings as ml_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from sam2tune.monailabel.app import (
    guard_endpoints,
    guard_infer_request,
    on_label_saved,
    quick_updaters,
    served_info,
    track_infer_uploads,
    train_request,
)
from sam2tune.monailabel.datastore import VersionedLocalDatastore
from sam2tune.monailabel.dicomweb import dicomweb_datastore
from sam2tune.monailabel.settings import AppSettings
from sam2tune.monailabel.strategy import EpistemicStrategy

logger = logging.getLogger(__name__)


class SAM2TuneApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.settings = AppSettings.from_conf(conf, app_dir)
        track_infer_uploads()  # so guard_infer_request accepts only the temp file POST /infer wrote for the request
        guard_endpoints(lambda: self._trainers)  # train bodies / infer params checked before a job starts
        self.bundles = {}
        for name in self.settings.bundle_names():
            config = SAM2BundleConfig()
            config.init(name, self.settings.model_dir, conf, None, settings=self.settings)
            self.bundles[name] = config
        logger.info("sam2tune bundles served: %s", list(self.bundles))
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="sam2tune",
                         description="SAM2 fine-tuning bundles: interactive segmentation, active learning, training")
        self.served_models = {name: c.train_task.model for name, c in self.bundles.items()}
        self.updaters = quick_updaters(self.served_models, self.datastore, self.settings)  # --conf auto_update

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            if ml_settings.MONAI_LABEL_DATASTORE.lower() in ("xnat", "dsa"):
                return super().init_datastore()
            # DICOMweb without MONAI Label's dcmqi download; DICOM SEG written with pydicom-seg
            self.studies = self.studies.rstrip("/").strip()
            return dicomweb_datastore(self.studies)
        return VersionedLocalDatastore(self.studies, extensions=ml_settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                                       auto_reload=ml_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                       read_only=ml_settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_infers(self):
        return {k: v for c in self.bundles.values() for k, v in c.infer().items()}

    def init_trainers(self):
        return {name: c.trainer() for name, c in self.bundles.items()}

    def init_strategies(self):
        strategies = {"random": Random(), "first": First()}
        if self.bundles:
            strategies["epistemic"] = EpistemicStrategy(
                {name: c.dropout_model for name, c in self.bundles.items()},
                self.settings.mc_samples, self.settings.uncertainty, self.settings.al_max_images)
        return strategies

    def infer(self, request, datastore=None):
        guard_infer_request(request, self._infers, datastore or self.datastore())
        return super().infer(request, datastore)

    def train(self, request):
        # runs in MONAI Label's training process (or in the request with run_sync): checked again there
        return super().train(train_request(request, self._trainers))

    def on_save_label(self, image_id, label_id):
        return on_label_saved(self.updaters, self.datastore(), image_id, label_id)

    def info(self):
        info = super().info()
        info["sam2tune"] = served_info(self.served_models, self.updaters)
        return info
