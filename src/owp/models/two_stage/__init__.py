"""The two-stage references: the shared R-CNN skeleton (``base``), the RPN proposer, OLN,
Double-Head R-CNN, and torchvision's COCO detectors as model sources (``torchvision``)."""
