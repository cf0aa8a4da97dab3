"""The authors' released networks (TensorFlow ``tfutil.Network`` and Theano ``network.Network`` pickles),
read without TensorFlow or Theano and without running any code stored in the pickle."""
