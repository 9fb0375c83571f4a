/*
 * ops.h - the FUSE layer's shared pieces (ops.c, session.c, fuse4fs.c).
 */
#ifndef F4_OPS_H
#define F4_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "fuse4fs.h"

extern const struct fuse_lowlevel_ops f4_ops;

ext2_ino_t f4_ino_of(fuse_ino_t n);
fuse_ino_t f4_nodeid_of(ext2_ino_t ino);
void f4_cred_of(fuse_req_t req, struct f4_cred *cred);
void f4_ops_attach(struct f4fs *f, struct fuse_session *se);

int f4_session_loop(struct fuse_session *se, struct f4fs *f, int threads);
void f4_session_stop(struct fuse_session *se);

#endif
