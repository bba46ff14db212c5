/*
 * Flux helpers on the Kubernetes client: ask Flux to reconcile now, the way
 * `flux reconcile` and the notification-controller's Receiver do, by setting the
 * `reconcile.fluxcd.io/requestedAt` annotation (Flux echoes it in
 * status.lastHandledReconcileAt once handled).
 */
#ifndef CO_CLIENTS_FLUX_H
#define CO_CLIENTS_FLUX_H

#include <jansson.h>

#include "base/error.h"
#include "clients/kube.h"

#define CO_FLUX_REQUESTED_AT "reconcile.fluxcd.io/requestedAt"
#define CO_FLUX_SOURCE_API "source.toolkit.fluxcd.io/v1"
#define CO_FLUX_KUSTOMIZE_API "kustomize.toolkit.fluxcd.io/v1"

/* Annotate one object with requestedAt = now (RFC 3339 with nanoseconds, as the flux
 * CLI writes it). res->obj is the patched object. */
int co_flux_request_reconcile(struct co_kube *kube, const struct co_kube_ref *ref,
			      co_kube_cb cb, void *data, struct co_error *err);

/*
 * For every GitRepository in the cluster (all namespaces) whose spec.url names one of
 * urls (co_git_url_same) and, when branch is given, whose spec.ref.branch equals it
 * (a GitRepository without spec.ref follows the remote's default branch, so it
 * matches any branch), request a reconcile. res->obj is an array of
 * "namespace/name" strings that were annotated. A cluster without Flux's source API
 * answers an empty array.
 */
int co_flux_reconcile_sources(struct co_kube *kube, const char *const *urls,
			      const char *branch, co_kube_cb cb, void *data,
			      struct co_error *err);

#endif
