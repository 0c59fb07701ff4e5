<?php

namespace WHMCS\Module\Server\Hostwright;

/**
 * A call to hostwright that did not succeed, with a message fit to show an admin or a
 * customer as it is (no credential, no password, no stack trace in it).
 *
 * $recorded says what hostwright did with the call: false when it answered and refused it
 * (nothing recorded), null when no answer came (it may or may not have recorded it).
 */
class GatewayError extends \RuntimeException
{
    /** @var int|null the HTTP status hostwright answered with; null when none came */
    private $status;

    public function __construct(string $message, ?int $status = null)
    {
        parent::__construct($message);
        $this->status = $status;
    }

    public function status(): ?int
    {
        return $this->status;
    }

    /** hostwright answered: whatever it decided, a retry of the same call is a new call. */
    public function answered(): bool
    {
        return $this->status !== null && $this->status < 500;
    }
}
