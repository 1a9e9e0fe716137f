"""The non-transformer students (TextCNN, BiLSTM, soft decision tree): their modules, settings
and folders. A floor below the methods that teach them (compress/textcnn, bilstm, tree) so that
models.py can load a saved one like any model folder."""
