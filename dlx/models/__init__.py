"""Plain nn.Modules. Constructor arguments are exactly the keys of conf/model/*.yaml; forward(x) returns logits."""
