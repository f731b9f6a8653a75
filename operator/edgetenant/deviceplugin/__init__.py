"""edgetenant's device plugin: time-sliced slots of a shared device, through the kubelet's device manager.

A node's CPU (or any device the operator time-slices) is advertised as `slots` devices of one
extended resource, as NVIDIA's GPU time-slicing advertises replicas of one GPU: the scheduler then
places at most `slots` tenants on the node, the kubelet allocates a slot to each pod, and
`kubectl describe node` shows how many are taken. The plugin speaks the kubelet's device-plugin
gRPC API (`api.py`), registers itself over `kubelet.sock`, and registers again whenever the
kubelet restarts.

    python -m edgetenant.deviceplugin --resource edgetenant.io/cpu-slot --slots 4
"""
