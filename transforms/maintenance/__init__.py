"""Predictive maintenance: the features a drone's recent health gives (``features``), the classifier trained on
them and the baseline it must beat (``training``), and the stream's scoring and maintenance alerts (``scoring``)."""
