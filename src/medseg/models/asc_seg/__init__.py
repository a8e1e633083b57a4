"""ASC-Seg: its encoder and decoder blocks and the model (docs/methods/asc_seg.md)."""

from medseg.models.asc_seg.model import CAB, CNSD, DCB, DFB, FAC, IPCB, MSFA, PMB, SAB, ASCSeg, ASEBlock

__all__ = ["CAB", "CNSD", "DCB", "DFB", "FAC", "IPCB", "MSFA", "PMB", "SAB", "ASCSeg", "ASEBlock"]
