<?php

namespace WHMCS\Module\Server\Hostwright;

/**
 * The commands WHMCS sends about one service, each with its Idempotency-Key (PendingCalls):
 * an order and the lifecycle actions. Each returns once hostwright has recorded it; the work
 * runs in hostwright's queue.
 */
class ServiceCommands
{
    /** @var ApiClient */
    private $client;
    /** @var PendingCalls */
    private $pending;

    public function __construct(ApiClient $client, PendingCalls $pending)
    {
        $this->client = $client;
        $this->pending = $pending;
    }

    /**
     * POST /v1/services. $body's password is keyed by its hash and never logged.
     */
    public function order(array $body): array
    {
        $password = (string) ($body['password'] ?? '');
        $keyArgs = $body;
        if ($password !== '') {
            $keyArgs['password'] = hash('sha256', $password);
        }
        return $this->send((string) $body['service_id'], 'create', '/v1/services', $body, $keyArgs, 'CreateAccount', [$password]);
    }

    /**
     * POST /v1/services/{id}/{action}. $keyArgs: what makes this call the same call besides
     * the service and the action (the plan, a password's hash); $secrets never reach the log.
     */
    public function act(
        string $serviceId,
        string $action,
        array $body,
        array $keyArgs,
        string $logAction,
        array $secrets = []
    ): array {
        $path = '/v1/services/' . rawurlencode($serviceId) . '/' . $action;
        return $this->send($serviceId, $action, $path, $body, $keyArgs, $logAction, $secrets);
    }

    private function send(
        string $serviceId,
        string $action,
        string $path,
        array $body,
        array $keyArgs,
        string $logAction,
        array $secrets
    ): array {
        $key = $this->pending->keyFor($serviceId, $action, $keyArgs);
        try {
            $answer = $this->client->post($path, $body, $key, $logAction, $secrets);
        } catch (GatewayError $error) {
            if ($error->answered()) {
                $this->pending->settle($key); // refused: nothing recorded under it
            }
            throw $error; // no answer: the key stays for WHMCS's retry
        }
        $this->pending->settle($key);
        return $answer;
    }
}
