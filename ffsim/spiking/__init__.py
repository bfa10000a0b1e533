"""Spiking front-end on Brian2: spike encoding, coincidence-detecting layers, spike-count goodness of FF
networks."""

from ffsim.spiking.coincidence import CoincidenceLayer, LayerResponse, brian2_cache_dir
from ffsim.spiking.encoders import SpikeTrains, latency_encode, rate_encode

__all__ = ["CoincidenceLayer", "LayerResponse", "SpikeTrains", "brian2_cache_dir", "latency_encode",
           "rate_encode"]
