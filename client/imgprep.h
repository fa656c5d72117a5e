/*
 * client/imgprep.h — internals of the image API (client/imgprep.c) that other modules use.
 */
#ifndef VLM_CLIENT_IMGPREP_H
#define VLM_CLIENT_IMGPREP_H

#include <stdint.h>

#include "client/imgdecode.h"

/* Reads and decodes an image file (vc_img_decode); the message names the path. */
int vc_img_decode_file(const char *path, uint64_t max_pixels, struct vc_rgb *out);

#endif /* VLM_CLIENT_IMGPREP_H */
