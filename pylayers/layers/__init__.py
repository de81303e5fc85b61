"""keras.layers: every built-in layer, and the Layer base class for your own."""
from pylayers.layers.activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from pylayers.layers.convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose, DepthwiseConv2D, SeparableConv2D)
from pylayers.layers.core import (Activation, ActivityRegularization, Dense, Dropout, Flatten,
                                  Lambda, Reshape)
from pylayers.layers.input_layer import Input, InputLayer
from pylayers.layers.keras_tensor import KerasTensor
from pylayers.layers.layer import Layer
from pylayers.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                                     Subtract)
from pylayers.layers.normalization import BatchNormalization, LayerNormalization
from pylayers.layers.pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D, GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D, MaxPooling2D, MaxPooling3D)
from pylayers.layers.reshaping import (Cropping2D, Permute, RepeatVector, UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D)
from pylayers.layers.embedding import Embedding, Masking
from pylayers.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from pylayers.layers.rnn_cells import GRUCell, LSTMCell, SimpleRNNCell
from pylayers.layers.wrappers import Bidirectional, TimeDistributed
