"""MONAI Label integration: interactive/automatic SAM2 infer tasks, active learning and fine-tuning per bundle.

`monailabel_app/` only wires these pieces; everything that can be tested without a server lives here.
"""
