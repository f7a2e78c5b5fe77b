//! Network namespaces with veth pairs, made and removed by the tests that need them.
