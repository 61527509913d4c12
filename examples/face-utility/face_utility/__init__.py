"""Face detection with OpenCV's Haar cascades; ``detector.detect_faces`` is usable on its own."""
