cdef extern from "pool.h":
    ctypedef struct pl_pool_geom:
        long batch, channels
        long in_size[3]
        long out_size[3]
        long window[3]
        long stride[3]
        long pad[3]

# The C geometry of a pooling geometry tuple (see pooling.pyx), checked.
cdef pl_pool_geom make_geom(tuple geom, long x_size, long y_size) except *
