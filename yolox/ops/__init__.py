"""Box operations, decoding, NMS and letterbox: one implementation of each, shared by every stage."""
