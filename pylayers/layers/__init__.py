"""keras.layers: every built-in layer, and the Layer base class for your own."""
from pylayers.layers.activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from pylayers.layers.core import (Activation, ActivityRegularization, Dense, Dropout, Flatten,
                                  Lambda, Reshape)
from pylayers.layers.input_layer import Input, InputLayer
from pylayers.layers.keras_tensor import KerasTensor
from pylayers.layers.layer import Layer
from pylayers.layers.embedding import Embedding, Masking
from pylayers.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from pylayers.layers.rnn_cells import GRUCell, LSTMCell, SimpleRNNCell
from pylayers.layers.wrappers import Bidirectional, TimeDistributed
