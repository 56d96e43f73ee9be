"""The production pipeline around the model: prompt safety and expansion, temporal upsampling,
super-resolution, safety on every frame, invisible watermark, quality report, C2PA provenance
and export (see produce.py for the order)."""

from kinema.production.expand import ChatExpander, ExpansionError, ShapesExpander
from kinema.production.export import ExportSettings, export
from kinema.production.interpolate import BlendInterpolator, FlowInterpolator, retime
from kinema.production.policy import PolicyError, PromptRefused, SafetyPolicy, load_policy
from kinema.production.produce import ProductionSettings, Stages, base_format, produce
from kinema.production.provenance import ProvenanceError
from kinema.production.safety import SafetyError
from kinema.production.upscale import ResizeUpscaler
from kinema.production.verify import verify

__all__ = [
    "BlendInterpolator", "ChatExpander", "ExpansionError", "ExportSettings", "FlowInterpolator",
    "PolicyError", "ProductionSettings", "PromptRefused", "ProvenanceError", "ResizeUpscaler",
    "SafetyError", "SafetyPolicy", "ShapesExpander", "Stages", "base_format", "export",
    "load_policy", "produce", "retime", "verify",
]  # fmt: skip
