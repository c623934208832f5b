import 'other.jsonnet'
