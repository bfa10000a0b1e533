"""Spiking front-end on Brian2: spike encoding, coincidence-detecting layers, and the spike-count goodness
of trained FF networks (agreement between image and label, or between bottom-up and top-down inputs of the
recurrent network, measured as coincidence)."""

from ffsim.spiking.coincidence import CoincidenceLayer, LayerResponse, brian2_cache_dir
from ffsim.spiking.encoders import SpikeTrains, latency_encode, rate_encode
from ffsim.spiking.ff_bridge import SpikingConfig, SpikingEvaluation, evaluate_spiking, layer_weights, spiking_layers
from ffsim.spiking.recurrent import RecurrentSpikingEvaluation, evaluate_spiking_recurrent, relay_counts

__all__ = ["CoincidenceLayer", "LayerResponse", "RecurrentSpikingEvaluation", "SpikeTrains", "SpikingConfig",
           "SpikingEvaluation", "brian2_cache_dir", "evaluate_spiking", "evaluate_spiking_recurrent", "latency_encode",
           "layer_weights", "rate_encode", "relay_counts", "spiking_layers"]
